// Taza dashboard: translations (ru default, kk, en) and locale-aware formatting.
// Every translated element carries data-i18n="key" (and data-i18n-args='{"n":1}' when the text
// has parameters); applyI18n() rewrites them all after a language switch.

export const LANGS = ['ru', 'kk', 'en'];
const LOCALES = { ru: 'ru-RU', kk: 'kk-KZ', en: 'en-GB' };
export const TZ = 'Asia/Almaty';

// key: [ru, kk, en]
const D = {
  'app.title': ['Taza — мониторинг воздуха и рек Алматы', 'Taza — Алматы ауасы мен өзендерінің мониторингі', 'Taza — Almaty air and river monitoring'],
  'app.subtitle': ['Мониторинг воздуха и рек · Алматы', 'Ауа мен өзендер мониторингі · Алматы', 'Air and river monitoring · Almaty'],
  'app.skip': ['Перейти к содержимому', 'Мазмұнға өту', 'Skip to content'],
  'app.footer': ['Управление экологии и окружающей среды г. Алматы · данные сети постов Taza', 'Алматы қаласының Экология және қоршаған орта басқармасы · Taza бекеттер желісінің деректері', 'Almaty Department of Ecology and Environment · data from the Taza post network'],
  'app.tz': ['Время: Алматы (UTC+5)', 'Уақыт: Алматы (UTC+5)', 'Times: Almaty (UTC+5)'],
  'nav.label': ['Разделы', 'Бөлімдер', 'Sections'],
  'lang.label': ['Язык', 'Тіл', 'Language'],
  'nav.overview': ['Обзор', 'Шолу', 'Overview'],
  'nav.targets': ['Цели', 'Мақсаттар', 'Targets'],
  'nav.zones': ['Зоны низких выбросов', 'Төмен эмиссия аймақтары', 'Low-emission zones'],
  'nav.rivers': ['Реки', 'Өзендер', 'Rivers'],
  'nav.alerts': ['Оповещения', 'Ескертулер', 'Alerts'],
  'nav.post': ['Пост', 'Бекет', 'Post'],

  'conn.live': ['Онлайн-данные поступают', 'Жедел деректер түсуде', 'Live data connected'],
  'conn.connecting': ['Подключение к потоку данных…', 'Деректер ағынына қосылуда…', 'Connecting to the live stream…'],
  'conn.lost': ['Поток данных прерван, переподключение…', 'Деректер ағыны үзілді, қайта қосылуда…', 'Live stream lost, reconnecting…'],

  'common.loading': ['Загрузка…', 'Жүктелуде…', 'Loading…'],
  'common.nodata': ['Нет данных', 'Деректер жоқ', 'No data'],
  'common.error': ['Не удалось загрузить данные: {msg}', 'Деректерді жүктеу мүмкін болмады: {msg}', 'Could not load data: {msg}'],
  'common.updated': ['Обновлено {time}', 'Жаңартылды {time}', 'Updated {time}'],
  'common.slow': ['Расчёт за год может занять несколько секунд…', 'Жылдық есептеу бірнеше секундқа созылуы мүмкін…', 'The yearly computation can take a few seconds…'],
  'common.back': ['← К обзору', '← Шолуға', '← Back to overview'],
  'common.year': ['Год', 'Жыл', 'Year'],
  'common.post': ['Пост', 'Бекет', 'Post'],
  'common.district': ['Район', 'Аудан', 'District'],
  'common.river': ['Река', 'Өзен', 'River'],
  'common.value': ['Значение', 'Мән', 'Value'],
  'common.time': ['Время', 'Уақыт', 'Time'],
  'common.status': ['Статус', 'Күйі', 'Status'],
  'common.level': ['Уровень', 'Деңгей', 'Level'],
  'common.online': ['на связи', 'желіде', 'online'],
  'common.offline': ['нет связи', 'желіден тыс', 'offline'],
  'common.unregistered': ['не зарегистрирован', 'тіркелмеген', 'unregistered'],
  'common.source': ['Источник', 'Дереккөз', 'Source'],
  'common.note': ['Примечание', 'Ескертпе', 'Note'],
  'common.yes': ['да', 'иә', 'yes'],
  'common.no': ['нет', 'жоқ', 'no'],
  'common.posts': ['Постов: {n}', 'Бекеттер: {n}', 'Posts: {n}'],
  'common.provisional': ['предварительно', 'алдын ала', 'provisional'],
  'common.kind.air': ['воздух', 'ауа', 'air'],
  'common.kind.river': ['река', 'өзен', 'river'],
  'common.kind.unregistered': ['не зарегистрирован', 'тіркелмеген', 'unregistered'],

  'ov.title': ['Обзор: воздух и реки Алматы', 'Шолу: Алматы ауасы мен өзендері', 'Overview: Almaty air and rivers'],
  'ov.map': ['Карта постов', 'Бекеттер картасы', 'Map of posts'],
  'ov.mapdesc': ['Посты мониторинга на схеме районов и рек Алматы; цвет и подпись — текущий уровень', 'Алматы аудандары мен өзендерінің сызбасындағы мониторинг бекеттері; түсі мен жазуы — ағымдағы деңгей', 'Monitoring posts on a schematic of Almaty districts and rivers; colour and label show the current level'],
  'ov.caption': ['Схема: границы районов и русла рек показаны приблизительно, это не топографическая карта. Цвет поста — последнее значение PM2.5 и NO₂ относительно ПДК с.с. и ПДК м.р.; для рек — уровень воды относительно критического.', 'Сызба: аудан шекаралары мен өзен арналары шамамен көрсетілген, бұл топографиялық карта емес. Бекет түсі — PM2.5 және NO₂ соңғы мәні ШРК о.т. және ШРК б.м. бойынша; өзендер үшін — су деңгейі қауіпті деңгейге қатысты.', 'Schematic: district boundaries and river courses are approximate, not a survey map. Post colour is the latest PM2.5 and NO₂ against the daily (ПДК с.с.) and one-time (ПДК м.р.) limits; for rivers, the water level against the critical level.'],
  'ov.legend': ['Условные обозначения', 'Шартты белгілер', 'Legend'],
  'ov.live': ['Текущие значения', 'Ағымдағы мәндер', 'Live values'],
  'ov.livedesc': ['PM2.5 для постов воздуха, уровень воды для речных постов; обновляется в реальном времени', 'Ауа бекеттері үшін PM2.5, өзен бекеттері үшін су деңгейі; нақты уақытта жаңарады', 'PM2.5 for air posts, water level for river posts; updates in real time'],
  'ov.city': ['Город за {year} год', '{year} жылғы қала көрсеткіштері', 'City, year {year}'],
  'ov.citysofar': ['с начала года', 'жыл басынан бері', 'so far this year'],
  'ov.grade': ['Уровень загрязнения', 'Ластану деңгейі', 'Pollution level'],
  'ov.iza': ['ИЗА5', 'АЛИ5', 'API5 (ИЗА5)'],
  'ov.izaincomplete': ['ИЗА рассчитан менее чем по пяти веществам', 'АЛИ бес заттан аз бойынша есептелген', 'ИЗА from fewer than five substances'],
  'ov.annual': ['{q}: среднее за год', '{q}: жылдық орташа', '{q}: annual mean'],
  'ov.plan': ['цель плана {year}: {v}', '{year} жоспар мақсаты: {v}', 'plan target {year}: {v}'],
  'ov.capture': ['полнота данных {v}', 'деректер толықтығы {v}', 'data capture {v}'],
  'ov.indicative': ['ориентировочно: мало данных', 'бағдарлы: деректер аз', 'indicative: low data capture'],
  'ov.above': ['выше цели', 'мақсаттан жоғары', 'above target'],
  'ov.below': ['не выше цели', 'мақсаттан аспайды', 'within target'],
  'ov.alerts': ['Активные оповещения', 'Белсенді ескертулер', 'Active alerts'],
  'ov.levels': ['Уровни', 'Деңгейлер', 'Levels'],
  'ov.si': ['СИ (макс.)', 'ЕЖИ (макс.)', 'SI (max)'],
  'ov.np': ['НП (макс.)', 'ЕҮҚ (макс.)', 'NP (max)'],

  'lvl.good': ['в пределах ПДК с.с.', 'ШРК о.т. шегінде', 'within daily limit'],
  'lvl.moderate': ['выше ПДК с.с.', 'ШРК о.т. жоғары', 'above daily limit'],
  'lvl.high': ['выше ПДК м.р.', 'ШРК б.м. жоғары', 'above one-time limit'],
  'lvl.nodata': ['нет данных', 'деректер жоқ', 'no data'],
  'lvl.river.normal': ['уровень в норме', 'деңгей қалыпты', 'level normal'],
  'lvl.river.near_critical': ['близко к критическому', 'қауіпті деңгейге жақын', 'near critical'],
  'lvl.river.critical': ['критический уровень', 'қауіпті деңгей', 'critical level'],
  'lvl.river.no_critical_level': ['критический уровень не задан', 'қауіпті деңгей белгіленбеген', 'no critical level set'],
  'lvl.air': ['Воздух (худшее из PM2.5, NO₂)', 'Ауа (PM2.5, NO₂ ең нашары)', 'Air (worst of PM2.5, NO₂)'],
  'lvl.riverhead': ['Реки (уровень воды)', 'Өзендер (су деңгейі)', 'Rivers (water level)'],
  'lvl.marker.air': ['● пост воздуха', '● ауа бекеті', '● air post'],
  'lvl.marker.river': ['◆ речной пост', '◆ өзен бекеті', '◆ river post'],

  'grade.low': ['низкий', 'төмен', 'low'],
  'grade.elevated': ['повышенный', 'жоғарылаған', 'elevated'],
  'grade.high': ['высокий', 'жоғары', 'high'],
  'grade.very_high': ['очень высокий', 'өте жоғары', 'very high'],

  'alerts.title': ['Оповещения', 'Ескертулер', 'Alerts'],
  'alerts.none': ['Оповещения ещё не настроены', 'Ескертулер әлі бапталмаған', 'Alerts are not configured yet'],
  'alerts.nonedesc': ['Правила оповещений (превышения ПДК, подъём уровня рек, потеря связи с постом) появятся в следующей версии шлюза. Здесь будет список активных оповещений с кнопкой подтверждения.', 'Ескерту ережелері (ШРК асуы, өзен деңгейінің көтерілуі, бекетпен байланыстың үзілуі) шлюздің келесі нұсқасында пайда болады. Мұнда растау батырмасы бар белсенді ескертулер тізімі болады.', 'Alert rules (limit exceedances, rising rivers, posts going silent) arrive in the next gateway version. This page will list active alerts with an acknowledge button.'],
  'alerts.empty': ['Активных оповещений нет', 'Белсенді ескертулер жоқ', 'No active alerts'],
  'alerts.ack': ['Подтвердить', 'Растау', 'Acknowledge'],
  'alerts.acked': ['Подтверждено', 'Расталды', 'Acknowledged'],
  'alerts.since': ['с {time}', '{time} бастап', 'since {time}'],

  'post.title': ['Пост {name}', '{name} бекеті', 'Post {name}'],
  'post.notfound': ['Пост не найден', 'Бекет табылмады', 'Post not found'],
  'post.live': ['Текущие значения', 'Ағымдағы мәндер', 'Live values'],
  'post.quantity': ['Показатель', 'Көрсеткіш', 'Quantity'],
  'post.flags': ['Флаги качества', 'Сапа белгілері', 'QA flags'],
  'post.noflags': ['без замечаний', 'ескертпесіз', 'none'],
  'post.chart.day': ['Последние сутки — среднечасовые', 'Соңғы тәулік — сағаттық орташа', 'Last 24 hours — hourly means'],
  'post.chart.month': ['Последние 30 дней — среднесуточные', 'Соңғы 30 күн — тәуліктік орташа', 'Last 30 days — daily means'],
  'post.chart.year': ['Последние 12 месяцев — среднесуточные', 'Соңғы 12 ай — тәуліктік орташа', 'Last 12 months — daily means'],
  'post.show': ['Показатель на графиках', 'Графиктердегі көрсеткіш', 'Quantity on the charts'],
  'post.meta': ['Сведения о посте', 'Бекет туралы мәлімет', 'About the post'],
  'post.sensors': ['Датчики', 'Датчиктер', 'Sensors'],
  'post.cadence': ['Период передачи', 'Жіберу кезеңі', 'Reporting interval'],
  'post.firmware': ['Прошивка', 'Микробағдарлама', 'Firmware'],
  'post.coords': ['Координаты', 'Координаттар', 'Coordinates'],
  'post.connection': ['Связь', 'Байланыс', 'Connection'],
  'post.recent': ['Последние измерения и флаги', 'Соңғы өлшемдер мен белгілер', 'Latest readings and flags'],
  'post.sec': ['{n} с', '{n} с', '{n} s'],

  'chart.mean': ['среднее', 'орташа', 'mean'],
  'chart.range': ['мин–макс', 'мин–макс', 'min–max'],
  'chart.capture': ['полнота данных', 'деректер толықтығы', 'data capture'],
  'chart.lowcapture': ['неполные данные (< 75 %)', 'толық емес деректер (< 75 %)', 'incomplete data (< 75 %)'],
  'chart.onetime': ['ПДК м.р. (разовая)', 'ШРК б.м. (бір реттік)', 'one-time limit (ПДК м.р.)'],
  'chart.daily': ['ПДК с.с. (среднесуточная)', 'ШРК о.т. (орташа тәуліктік)', 'daily limit (ПДК с.с.)'],
  'chart.onetime.short': ['ПДК м.р.', 'ШРК б.м.', 'one-time limit'],
  'chart.daily.short': ['ПДК с.с.', 'ШРК о.т.', 'daily limit'],
  'chart.critical.short': ['критический', 'қауіпті', 'critical'],
  'chart.critical': ['критический уровень', 'қауіпті деңгей', 'critical level'],
  'chart.inside': ['в зоне', 'аймақ ішінде', 'inside'],
  'chart.outside': ['вне зоны', 'аймақтан тыс', 'outside'],
  'chart.start': ['начало зоны', 'аймақтың басталуы', 'zone start'],
  'chart.summary': ['{title}: {n} точек, от {min} до {max} {unit}', '{title}: {n} нүкте, {min}–{max} {unit}', '{title}: {n} points, from {min} to {max} {unit}'],

  'tg.title': ['Цели плана по качеству воздуха', 'Ауа сапасы жоспарының мақсаттары', 'Air-quality plan targets'],
  'tg.desc': ['Траектория плана 2019–2025 и значения, измеренные сетью Taza', '2019–2025 жоспар траекториясы және Taza желісі өлшеген мәндер', 'The plan trajectory 2019–2025 beside the values measured by the Taza network'],
  'tg.plan': ['План', 'Жоспар', 'Plan'],
  'tg.measured': ['Измерено', 'Өлшенді', 'Measured'],
  'tg.capture': ['Полнота', 'Толықтық', 'Capture'],
  'tg.kind': ['Тип', 'Түрі', 'Kind'],
  'tg.kind.baseline': ['исходное', 'бастапқы', 'baseline'],
  'tg.kind.target': ['цель', 'мақсат', 'target'],
  'tg.st.met': ['выполнено', 'орындалды', 'met'],
  'tg.st.not_met': ['не выполнено', 'орындалмады', 'not met'],
  'tg.st.not_enough_data': ['недостаточно данных', 'деректер жеткіліксіз', 'not enough data'],
  'tg.st.in_progress': ['год не завершён', 'жыл аяқталмаған', 'in progress'],
  'tg.st.none': ['нет измерений Taza', 'Taza өлшемдері жоқ', 'no Taza measurement'],
  'tg.chart': ['{name}: план и измерения', '{name}: жоспар және өлшемдер', '{name}: plan and measured'],
  'tg.unconfirmed': ['источник не подтверждён', 'дереккөз расталмаған', 'source unconfirmed'],
  'tg.legend.plan': ['план', 'жоспар', 'plan'],
  'tg.legend.measured': ['измерено Taza', 'Taza өлшеген', 'measured by Taza'],

  'z.title': ['Зоны низких выбросов', 'Төмен эмиссия аймақтары', 'Low-emission zones'],
  'z.desc': ['Границы зон, среднесуточные значения в зоне и вне её, оценка эффекта «до/после» с доверительным интервалом', 'Аймақ шекаралары, аймақ ішіндегі және одан тыс тәуліктік орташа мәндер, «дейін/кейін» әсерінің сенімділік аралығымен бағасы', 'Zone boundaries, daily means inside and outside, and the before/after effect with its interval'],
  'z.none': ['Зоны не заданы', 'Аймақтар белгіленбеген', 'No zones defined'],
  'z.start': ['Начало действия: {date}', 'Басталу күні: {date}', 'In force since {date}'],
  'z.inside': ['Посты в зоне: {list}', 'Аймақтағы бекеттер: {list}', 'Posts inside: {list}'],
  'z.series': ['{q}: в зоне и вне зоны, среднесуточные', '{q}: аймақ ішінде және сыртында, тәуліктік орташа', '{q}: inside vs outside, daily means'],
  'z.effect': ['Эффект зоны (разность разностей)', 'Аймақ әсері (айырмалар айырмасы)', 'Zone effect (difference in differences)'],
  'z.eff.q': ['Показатель', 'Көрсеткіш', 'Quantity'],
  'z.eff.effect': ['Эффект', 'Әсер', 'Effect'],
  'z.eff.ci': ['95 % интервал', '95 % аралық', '95 % interval'],
  'z.eff.sig': ['Значимо', 'Маңызды', 'Significant'],
  'z.eff.days': ['Дней до / после', 'Дейін / кейін күндер', 'Days before / after'],
  'z.eff.posts': ['Постов в зоне / вне', 'Аймақтағы / сырттағы бекеттер', 'Posts inside / outside'],
  'z.eff.reading': ['Отрицательный эффект — в зоне стало чище относительно остального города.', 'Теріс әсер — аймақта қаланың қалған бөлігіне қарағанда тазарақ болды.', 'A negative effect means the zone got cleaner relative to the rest of the city.'],
  'z.eff.na': ['недостаточно данных для оценки', 'бағалау үшін деректер жеткіліксіз', 'not enough data to estimate'],
  'z.eff.err': ['Оценка эффекта недоступна: {msg}', 'Әсер бағасы қолжетімсіз: {msg}', 'Effect estimate unavailable: {msg}'],
  'z.map': ['Зоны на карте', 'Картадағы аймақтар', 'Zones on the map'],
  'z.noinside': ['в зоне нет постов воздуха', 'аймақта ауа бекеттері жоқ', 'no air posts inside'],

  'rv.title': ['Реки: качество воды и уровень', 'Өзендер: су сапасы мен деңгейі', 'Rivers: water quality and level'],
  'rv.desc': ['Класс качества воды, уровень относительно критического и скорость подъёма по каждому речному посту', 'Әр өзен бекеті бойынша су сапасының класы, қауіпті деңгейге қатысты деңгей және көтерілу жылдамдығы', 'Water-quality class, level against the critical level and rise rate for each river post'],
  'rv.provisional': ['Классы качества воды предварительные: таблица классов Единой классификации (2016) не подтверждена.', 'Су сапасының кластары алдын ала: Бірыңғай жіктеудің (2016) кластар кестесі расталмаған.', 'Water-quality classes are provisional: the Unified Classification (2016) class table is not verified.'],
  'rv.class': ['Класс качества', 'Сапа класы', 'Quality class'],
  'rv.classn': ['{n} класс', '{n} класс', 'class {n}'],
  'rv.class6': ['хуже 5 класса', '5 кластан нашар', 'worse than class 5'],
  'rv.level': ['Уровень воды', 'Су деңгейі', 'Water level'],
  'rv.critical': ['Критический', 'Қауіпті', 'Critical'],
  'rv.margin': ['До критического', 'Қауіпті деңгейге дейін', 'Below critical'],
  'rv.rise': ['Скорость подъёма', 'Көтерілу жылдамдығы', 'Rise rate'],
  'rv.risefast': ['быстрый подъём', 'жылдам көтерілу', 'rising fast'],
  'rv.cmh': ['{v} см/ч', '{v} см/сағ', '{v} cm/h'],
  'rv.cm': ['{v} см', '{v} см', '{v} cm'],
  'rv.at': ['на {time}', '{time} бойынша', 'at {time}'],
  'rv.params': ['Показатели (среднее за 24 ч)', 'Көрсеткіштер (24 сағ орташа)', 'Parameters (24 h mean)'],
  'rv.izv': ['ИЗВ', 'СЛИ', 'WPI (ИЗВ)'],
  'rv.izv.na': ['не рассчитан', 'есептелмеген', 'not computed'],
  'rv.oxygen': ['Кислород ниже рыбохозяйственной нормы (6 мг/л)', 'Оттегі балық шаруашылығы нормасынан төмен (6 мг/л)', 'Oxygen below the fishery minimum (6 mg/L)'],
  'rv.oxy.high': ['ВЗ по кислороду', 'Оттегі бойынша ЖЛ', 'high pollution by oxygen (ВЗ)'],
  'rv.oxy.extreme': ['ЭВЗ по кислороду', 'Оттегі бойынша ЭЖЛ', 'extreme pollution by oxygen (ЭВЗ)'],
  'rv.none': ['Речных постов нет', 'Өзен бекеттері жоқ', 'No river posts'],

  'q.pm1': ['PM1', 'PM1', 'PM1'],
  'q.pm2_5': ['PM2.5', 'PM2.5', 'PM2.5'],
  'q.pm10': ['PM10', 'PM10', 'PM10'],
  'q.no2': ['NO₂', 'NO₂', 'NO₂'],
  'q.temperature': ['Температура воздуха', 'Ауа температурасы', 'Air temperature'],
  'q.humidity': ['Влажность', 'Ылғалдылық', 'Humidity'],
  'q.pressure': ['Давление', 'Қысым', 'Pressure'],
  'q.water_level': ['Уровень воды', 'Су деңгейі', 'Water level'],
  'q.water_temperature': ['Температура воды', 'Су температурасы', 'Water temperature'],
  'q.conductivity': ['Электропроводность', 'Электр өткізгіштік', 'Conductivity'],
  'q.turbidity': ['Мутность', 'Лайлылық', 'Turbidity'],
  'q.dissolved_oxygen': ['Растворённый кислород', 'Еріген оттегі', 'Dissolved oxygen'],
  'q.ph': ['pH', 'pH', 'pH'],
  'q.rssi': ['Уровень сигнала', 'Сигнал деңгейі', 'Signal strength'],
  'q.supply_voltage': ['Напряжение питания', 'Қоректендіру кернеуі', 'Supply voltage'],
  'q.iza5': ['ИЗА5', 'АЛИ5', 'ИЗА5 (air pollution index)'],

  'u.ug/m3': ['мкг/м³', 'мкг/м³', 'µg/m³'],
  'u.Cel': ['°C', '°C', '°C'],
  'u.%RH': ['%', '%', '%'],
  'u.Pa': ['Па', 'Па', 'Pa'],
  'u.cm': ['см', 'см', 'cm'],
  'u.uS/cm': ['мкСм/см', 'мкСм/см', 'µS/cm'],
  'u.NTU': ['NTU', 'NTU', 'NTU'],
  'u.mg/L': ['мг/л', 'мг/л', 'mg/L'],
  'u.pH': ['', '', ''],
  'u.dBm': ['дБм', 'дБм', 'dBm'],
  'u.V': ['В', 'В', 'V'],

  'flag.warm_up': ['прогрев', 'қыздыру', 'warm-up'],
  'flag.out_of_range': ['вне диапазона', 'ауқымнан тыс', 'out of range'],
  'flag.stuck': ['залипание', 'қатып қалу', 'stuck'],
  'flag.saturated': ['насыщение', 'қанығу', 'saturated'],
  'flag.high_humidity': ['высокая влажность', 'жоғары ылғалдылық', 'high humidity'],
  'flag.sensor_not_answering': ['датчик не отвечает', 'датчик жауап бермейді', 'sensor not answering'],
  'flag.corrected': ['скорректировано', 'түзетілген', 'corrected'],

  'd.Алатауский': ['Алатауский', 'Алатау', 'Alatau'],
  'd.Алмалинский': ['Алмалинский', 'Алмалы', 'Almaly'],
  'd.Ауэзовский': ['Ауэзовский', 'Әуезов', 'Auezov'],
  'd.Бостандыкский': ['Бостандыкский', 'Бостандық', 'Bostandyk'],
  'd.Жетысуский': ['Жетысуский', 'Жетісу', 'Zhetysu'],
  'd.Медеуский': ['Медеуский', 'Медеу', 'Medeu'],
  'd.Наурызбайский': ['Наурызбайский', 'Наурызбай', 'Nauryzbay'],
  'd.Турксибский': ['Турксибский', 'Түрксіб', 'Turksib'],
  'r.ulken': ['Улкен Алматы (Большая Алматинка)', 'Үлкен Алматы', 'Ulken Almaty (Bolshaya Almatinka)'],
  'r.kishi': ['Киши Алматы (Малая Алматинка)', 'Кіші Алматы', 'Kishi Almaty (Malaya Almatinka)'],
  'r.esentai': ['Есентай (Весновка)', 'Есентай', 'Esentai (Vesnovka)'],
};

let current = 'ru';

export function lang() { return current; }
export function locale() { return LOCALES[current]; }

export function initialLang() {
  let saved = null;
  try { saved = localStorage.getItem('taza.lang'); } catch { /* storage off */ }
  return LANGS.includes(saved) ? saved : 'ru';
}

export function setLang(l) {
  if (!LANGS.includes(l)) return;
  current = l;
  try { localStorage.setItem('taza.lang', l); } catch { /* storage off */ }
  document.documentElement.lang = l;
}

export function has(key) { return Object.prototype.hasOwnProperty.call(D, key); }

/** Translate `key`, filling {name} placeholders from `args`. */
export function t(key, args) {
  const row = D[key];
  let s = row ? row[LANGS.indexOf(current)] : key;
  if (args) s = s.replace(/\{(\w+)\}/g, (m, k) => (k in args ? String(args[k]) : m));
  return s;
}

/** Re-translate every [data-i18n] element under `root`. */
export function applyI18n(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) {
    let args;
    if (el.dataset.i18nArgs) { try { args = JSON.parse(el.dataset.i18nArgs); } catch { args = undefined; } }
    el.textContent = t(el.dataset.i18n, args);
  }
  for (const el of root.querySelectorAll('[data-i18n-aria]')) el.setAttribute('aria-label', t(el.dataset.i18nAria));
  document.title = t('app.title');
}

// ---- formatting (always Almaty time) ----
const nfCache = new Map();
function nf(opts) {
  const k = current + JSON.stringify(opts);
  if (!nfCache.has(k)) nfCache.set(k, new Intl.NumberFormat(locale(), opts));
  return nfCache.get(k);
}
export function fmtNum(v, digits = 1) {
  if (v == null || !Number.isFinite(v)) return '—';
  return nf({ minimumFractionDigits: digits, maximumFractionDigits: digits }).format(v);
}
export function fmtPct(frac, digits = 0) {
  if (frac == null || !Number.isFinite(frac)) return '—';
  return nf({ style: 'percent', maximumFractionDigits: digits }).format(frac);
}
const dfCache = new Map();
function df(opts) {
  const k = current + JSON.stringify(opts);
  if (!dfCache.has(k)) dfCache.set(k, new Intl.DateTimeFormat(locale(), { timeZone: TZ, ...opts }));
  return dfCache.get(k);
}
const asDate = (x) => (x instanceof Date ? x : new Date(typeof x === 'number' && x < 1e12 ? x * 1000 : x));
export function fmtDateTime(x) { return df({ day: '2-digit', month: '2-digit', year: 'numeric', hour: '2-digit', minute: '2-digit' }).format(asDate(x)); }
export function fmtTime(x) { return df({ hour: '2-digit', minute: '2-digit', second: '2-digit' }).format(asDate(x)); }
export function fmtHour(x) { return df({ hour: '2-digit', minute: '2-digit' }).format(asDate(x)); }
export function fmtDay(x) { return df({ day: 'numeric', month: 'short' }).format(asDate(x)); }
export function fmtDate(x) { return df({ day: 'numeric', month: 'long', year: 'numeric' }).format(asDate(x)); }
export function fmtMonth(x) { return df({ month: 'short', year: '2-digit' }).format(asDate(x)); }

/** Unit label in the current language. */
export function unit(u) { return has('u.' + u) ? t('u.' + u) : (u || ''); }
/** Quantity label in the current language. */
export function qname(q) { return has('q.' + q) ? t('q.' + q) : q; }
